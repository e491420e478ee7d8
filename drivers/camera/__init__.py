"""Camera capture (OpenCV) and the camera's config model. Detection lives in gateway/vision."""
