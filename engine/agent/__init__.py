"""The agent runtime: a tool loop over a ``ModelClient`` that streams ``RunEvent``s."""
