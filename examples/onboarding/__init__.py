"""The onboarding example: welcome, guide, and a nudge for users without a project."""
