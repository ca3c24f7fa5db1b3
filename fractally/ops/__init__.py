"""Running the service: the local stack, Kubernetes deployment, image checks."""
