# Seed 003_313a1c42a9d7cd2e.txt, example 2: one child sends "hello" and closes its end, the
# other child's second recv() raises EOFError ("end").
# Changed: the import lines name shmq; the program, run together by the web page, is
# restored line for line (`import time` and the call lines were glued); the start method
# is set to spawn (two added lines): with fork, p_recv inherits the main process's
# out_conn, still open when it starts, so with multiprocessing its second recv() waits
# forever instead of raising EOFError as the seed says. The test checks "hello" then "end".
from shmq import Process
from shmq import Pipe
from shmq import set_start_method  # added
import os
import time

def send(out_conn):
    out_conn.send("hello")
    # 发完一次内容后就将子进程中的 out_conn 给 close()注意外部(主进程中)的 out_conn 也需要被 close
    out_conn.close()

def recv(in_conn):
    try:
        print(in_conn.recv())
        print(in_conn.recv())  # 第二次调用 .recv() 会抛出 EOFError 异常因为 out_conn 已经被关闭了
    except EOFError:
        print("end")

if __name__ == '__main__':
    set_start_method('spawn')  # added
    out_conn, in_conn = Pipe(True)
    p_send = Process(target=send, args=(out_conn,))
    p_send.start()
    p_recv = Process(target=recv, args=(in_conn,))
    p_recv.start()
    out_conn.close()  # 在子进程拷贝完 Pipe Connections 之后外部的 out_conn 也需要被关闭
    p_send.join()
    p_recv.join()
