"""Local testbed: real dockerd nodes as Azure scale-set instances behind a fake ARM endpoint."""
