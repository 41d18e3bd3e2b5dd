shutdown /r /t 60 /c "kanade: scheduled reboot"
