/* SCAFFOLD: replaced by the daemon issue (the shared scan-and-caption pipeline). */
int capindexer_placeholder(void);
int capindexer_placeholder(void) { return 0; }
