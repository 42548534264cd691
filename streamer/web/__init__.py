"""The web page (`run_web.py`): photos, videos and the webcam in a browser, on Gradio.

`service` holds the model side and imports no Gradio; `app` builds the page; `convert`
bridges to run_video's conversion functions; `previews` draws the style thumbnails' pattern.
"""
