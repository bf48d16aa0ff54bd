"""An order that ships only once someone approves it within a day."""
