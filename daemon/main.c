/* SCAFFOLD: replaced by the daemon issue. */
#include <stdio.h>
int main(void)
{
    fputs("capsearchd: not built yet\n", stderr);
    return 1;
}
