# Slicer's extension config and packaging: nothing in this stand-in.
