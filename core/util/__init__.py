"""Small helpers with no zoo dependencies: hashing, memory.

May import: nothing of zoo."""
