"""``python -m matstore`` runs the command line."""

from matstore.cli import main

main()
