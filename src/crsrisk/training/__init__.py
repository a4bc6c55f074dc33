"""Training: plan every task and landmark, cross-validate beside the published scores, fit, track, bundle."""
