"""`wdsr-fast demo` (placeholder, the lead fills it in)."""


def add_parser(subparsers):
    parser = subparsers.add_parser("demo", help="upscale a real photo that ships offline and time it")
    parser.set_defaults(func=lambda args: 0)
