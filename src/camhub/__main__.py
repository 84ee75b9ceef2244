from camhub.cli import main

raise SystemExit(main())
