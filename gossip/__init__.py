"""overlayd gossip layer."""
