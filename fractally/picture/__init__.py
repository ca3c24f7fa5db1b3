"""The picture: a render spec, its kernels, colours and image formats; no service, no I/O but files."""
