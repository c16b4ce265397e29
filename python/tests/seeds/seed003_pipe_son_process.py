# Seed 003_313a1c42a9d7cd2e.txt, example 1: a pipe from the main process to a child, which
# reads until EOFError once the main process closed its end.
# Changed: the import line names shmq; the program, run together onto a few lines by the
# web page (newlines, '=', quotes and '#' lost), is restored line for line: the lost
# comment text is kept as comments, `print msg` (Python 2) is print(msg). The test checks
# 0..999 arrive in order and the main process ends.
from shmq import Pipe, Process

def son_process(x, pipe):
    # 注意out在前in在后
    _out_pipe, _in_pipe = pipe
    # 关闭拷贝过来的输入端
    _in_pipe.close()
    while True:
        try:
            msg = _out_pipe.recv()
            print(msg)
        except EOFError:
            # 当out_pipe接受不到输出的时候且输入被关闭的时候会抛出EORFError可以捕获并且退出子进程
            break

if __name__ == '__main__':
    out_pipe, in_pipe = Pipe(True)
    son_p = Process(target=son_process, args=(100, (out_pipe, in_pipe)))
    son_p.start()
    # 等pipe被拷贝后关闭主进程的输出端这样创建的Pipe一端连接着主进程的输入一端连接着子进程的输出口
    out_pipe.close()
    for x in range(1000):
        in_pipe.send(x)
    in_pipe.close()
    son_p.join()
    print("主进程结束")
