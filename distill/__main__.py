import sys

from distill.distill import main

sys.exit(main())
