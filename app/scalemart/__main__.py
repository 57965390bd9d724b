from scalemart.cli import main

raise SystemExit(main())
