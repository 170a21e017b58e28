"""`python -m gpunn`: the command line (see gpunn.cli).

The guard matters: importing this module (as `runpy` or a careless loader might) must not run the
CLI with the host process's argv and exit it."""
if __name__ == "__main__":
    from gpunn.cli import main

    raise SystemExit(main())
