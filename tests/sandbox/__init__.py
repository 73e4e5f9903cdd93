"""Tests of the sandbox itself: daemon, RDS stand-in, network, images, helm and docker."""
