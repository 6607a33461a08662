"""Peers built around a base optimizer (Mechanic, Schedule-Free's wrapper), each in its own module so that importing
one needs only its own optional package. The registry builds them by import path."""
