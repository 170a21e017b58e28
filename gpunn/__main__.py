from gpunn.cli import main

raise SystemExit(main())
