"""``python -m gaussiansr_plugin.test -opt X.yml``."""
import sys

from gaussiansr_plugin.cli.basicsr_cli import main

if __name__ == '__main__':
    main(['test'] + sys.argv[1:])
