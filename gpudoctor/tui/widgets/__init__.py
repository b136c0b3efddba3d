"""The main screen's widgets: host header, stack view, check tree, detail pane."""
