"""overlayd dataplane layer."""
