"""The retention janitor: a one-shot job deleting each client's data past its retention."""
