"""overlayd manager layer."""
