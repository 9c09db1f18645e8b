"""``python -m gaussiansr_plugin.train -opt X.yml [--launcher pytorch]`` (e.g. under torchrun)."""
import sys

from gaussiansr_plugin.cli.basicsr_cli import main

if __name__ == '__main__':
    main(['train'] + sys.argv[1:])
