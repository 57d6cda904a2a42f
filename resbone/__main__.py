"""`python -m resbone ...` (what `torchrun -m resbone train ...` runs)."""
from resbone.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
