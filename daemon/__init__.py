"""overlayd daemon layer."""
