from xsctl.cli import main

raise SystemExit(main())
