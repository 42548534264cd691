"""run_video.py: offline conversion of video files, stills and folders."""
