# Seed 001_4c3e96c635851dad.txt, example 6: Pipe as producer/consumer (1 producer, 3
# consumers reading one end, each stopping on EOFError).
# Changed: only the import line (names shmq). The test checks the 10 products are
# consumed at most once each (all of them, against shmq).
from shmq import Process, Pipe


def producer(con, pro, name):
    con.close()
    for i in range(10):
        pro.send('{}的{}号产品'.format(name, i))
    pro.close()


def consumer(con, pro, name):
    pro.close()
    while True:
        try:
            msg = con.recv()
            print('{}消费了{}'.format(name, msg))

        except EOFError:
            con.close()
            break


if __name__ == '__main__':
    con_p, pro_p = Pipe()

    for j in range(1):
        Process(target=producer, args=(con_p, pro_p, '{}'.format(j))).start()

    for k in range(3):
        Process(target=consumer, args=(con_p, pro_p, '{}'.format(k))).start()
    con_p.close()  # 在主进程里创建的管道,分别交给各个子进程,在子进程里都close之后,主进程也需要关闭,所有进程里都需要关闭所使用的管道
    pro_p.close()  # 所有进程内关闭管道
