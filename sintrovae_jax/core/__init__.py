"""What users embed: losses, objectives, the step factory, train state, inference, parallel wrappers."""
