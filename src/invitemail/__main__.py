from invitemail.cli import main

main()
