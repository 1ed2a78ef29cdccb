"""The views the menu switches between."""
