"""The Textual themes the workbench ships: dark, light and high contrast.

Plain `textual.theme.Theme` objects; the app registers every theme in `THEMES` and offers
them in the command palette. High contrast keeps pure black and white with saturated accents
(and the screens never rely on colour alone: diff and marks also have glyphs).
"""

from __future__ import annotations

from textual.theme import Theme

DARK = Theme(
    name="workbench-dark",
    primary="#5FA8F5",
    secondary="#8C9EFF",
    accent="#E5B567",
    foreground="#D8DEE9",
    background="#11151B",
    surface="#181E26",
    panel="#212934",
    success="#7BC88F",
    warning="#E8C16F",
    error="#F2777A",
    dark=True,
    variables={
        "footer-key-foreground": "#5FA8F5",
        "block-cursor-background": "#2E4A6B",
        "block-cursor-foreground": "#FFFFFF",
    },
)

LIGHT = Theme(
    name="workbench-light",
    primary="#1F5FBF",
    secondary="#6F42C1",
    accent="#A8530B",
    foreground="#1F2328",
    background="#FFFFFF",
    surface="#F5F7FA",
    panel="#E6EBF1",
    success="#1A7F37",
    warning="#8A5A00",
    error="#C4232E",
    dark=False,
    variables={
        "footer-key-foreground": "#1F5FBF",
        "block-cursor-background": "#CFE0F7",
        "block-cursor-foreground": "#0B1F3A",
    },
)

HIGH_CONTRAST = Theme(
    name="workbench-high-contrast",
    primary="#FFFF00",
    secondary="#00FFFF",
    accent="#FF80FF",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#1A1A1A",
    success="#00FF00",
    warning="#FFFF00",
    error="#FF5C5C",
    dark=True,
    luminosity_spread=0.0,
    text_alpha=1.0,
    variables={
        "border": "#FFFFFF",
        "footer-key-foreground": "#FFFF00",
        "footer-background": "#000000",
        "block-cursor-background": "#FFFF00",
        "block-cursor-foreground": "#000000",
        "block-cursor-text-style": "bold",
        "input-selection-background": "#FFFF00 50%",
    },
)

THEMES: tuple[Theme, ...] = (DARK, LIGHT, HIGH_CONTRAST)
DEFAULT_THEME = DARK.name

__all__ = ["DARK", "DEFAULT_THEME", "HIGH_CONTRAST", "LIGHT", "THEMES"]
