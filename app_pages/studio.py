"""Studio: references + a brief -> Nano Banana -> new images, saved back to the library with provenance."""
from ragkit.ui import studio_view

studio_view.render()
