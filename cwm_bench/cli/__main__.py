from cwm_bench.cli import main

main()
