"""Small helpers every part may use: rate-limited logging, atomic files, counters. Imports nothing of the hub."""
