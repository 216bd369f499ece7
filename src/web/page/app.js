// The web client: see index.html.
