"""The Textual workbench: `app.WorkbenchApp` and `app.run_tui`; screens, widgets and the .tcss."""
