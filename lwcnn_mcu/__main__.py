from lwcnn_mcu.cli import main

main()
