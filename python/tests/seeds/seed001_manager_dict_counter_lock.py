# Seed 001_4c3e96c635851dad.txt, example 8: the same 70-process Manager dict counter under
# a Lock.
# Changed: only the import line (names shmq). The test checks it prints {'count': 30}.
from shmq import Process, Manager,Lock


def minus(dic,lock):
    lock.acquire()
    dic['count'] -= 1
    lock.release()

if __name__ == '__main__':
    m = Manager()
    lock = Lock()
    dic = m.dict({'count': 100})  # 这个字典会变成可用于数据共享的字典
    p_list = []
    for i in range(70):
        p =Process(target=minus, args=(dic,lock))
        p_list.append(p)
        p.start()
    [i.join() for i in p_list]
    print(dic)
