"""overlayd api layer."""
