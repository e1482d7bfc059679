from streamser.cli import main

raise SystemExit(main())
