"""Screens: the main screen, the fix flow (preview, confirm, apply), the install wizard, export, help."""
