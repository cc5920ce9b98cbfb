"""One module per `probe` subcommand: NAME, HELP, add_arguments(parser), run(args)."""
