"""The controller's runtime: reconcile loop, lease and progress store, sources, events, health."""
