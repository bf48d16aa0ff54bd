"""Who may call the control plane: API keys with roles (keys.py)."""
