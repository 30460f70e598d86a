"""Deployment helpers: the macOS LaunchAgents behind ``rerank-server launchd``."""
