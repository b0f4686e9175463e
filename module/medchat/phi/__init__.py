"""Patient-identifier detection for case rooms: pure functions over text, no I/O."""
